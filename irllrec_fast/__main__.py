"""`python -m irllrec_fast train ...`: the same as the `irllrec-fast` command."""
import sys

from .cli import main

sys.exit(main())
