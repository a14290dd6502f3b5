// The Python module irllrec_fast._C. It exports nothing itself: importing it loads the shared
// library, whose static initialisers register the operators under torch.ops.irllrec_fast.
// Kept apart from ops.cpp so the CMake build (a plain C++ library) needs no Python.
#include <Python.h>

static struct PyModuleDef irllrec_fast_module = {
    PyModuleDef_HEAD_INIT, "_C",
    "irllrec_fast kernels; the operators live in torch.ops.irllrec_fast", -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&irllrec_fast_module); }
