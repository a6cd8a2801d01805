"""WordNet 3.0 synonyms (Miller 1995) for word-substitution attacks, offline or online.

``load_wordnet_synonyms()`` -> {word: set of single-word synonyms} (two words are synonyms when they
share a synset, in any sense). The data files ``data.{noun,verb,adj,adv}`` are read directly (no
WordNet reader API needed), from the first place that has them:

1. ``directory`` or the ``COURSE_WORDNET_DIR`` environment variable;
2. the Debian / Ubuntu package ``wordnet-base`` (``/usr/share/wordnet``; ``apt-get install wordnet-base``);
3. NLTK's data folders (``<nltk_data>/corpora/wordnet/`` or ``wordnet.zip``), after
   ``nltk.download("wordnet")`` when ``download=True`` and online.

``restrict_synonyms`` keeps the synonyms a model can read (in its vocabulary), which is the
substitution set S(w) of Jia et al. (2019) used by both the attack and the certificate.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

POS_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
SYSTEM_DIRS = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/usr/share/wordnet/dict")
# Words whose WordNet "synonyms" are almost never meaning-preserving in a review (be -> live, a -> vitamin_a).
STOPWORDS = frozenset("""a an the and or but if of to in on at by for with from as is are was were be been being am
it its it's this that these those i you he she we they me him her us them my your his our their not no n't 's do does
did have has had will would can could should may might must shall so than then too very just also there here what
which who whom whose when where why how all any both each few more most other some such only own same one two""".split())


def parse_data_file(lines) -> list[list[str]]:
    """Synsets of one WordNet ``data.*`` file: a list of lemma lists (lower case, ``_`` for spaces)."""
    synsets = []
    for line in lines:
        if not line or line.startswith(" "):  # licence header lines start with two spaces
            continue
        fields = line.split()
        n_words = int(fields[3], 16)  # w_cnt is a two-digit hexadecimal number
        words = fields[4:4 + 2 * n_words:2]
        synsets.append([w.split("(")[0].lower() for w in words])  # drop adjective markers such as (a)
    return synsets


def _read_folder(folder: Path):
    return [folder.joinpath(f).read_text(encoding="utf-8", errors="replace").splitlines() for f in POS_FILES]


def _read_zip(path: Path):
    with zipfile.ZipFile(path) as z:
        names = {Path(n).name: n for n in z.namelist()}
        return [io.TextIOWrapper(z.open(names[f]), encoding="utf-8", errors="replace").read().splitlines() for f in POS_FILES]


def _candidates(directory):
    if directory or os.environ.get("COURSE_WORDNET_DIR"):
        yield Path(directory or os.environ["COURSE_WORDNET_DIR"])
    yield from (Path(d) for d in SYSTEM_DIRS)
    try:
        import nltk
    except ImportError:
        return
    for root in nltk.data.path:
        yield Path(root) / "corpora" / "wordnet"
        yield Path(root) / "corpora" / "wordnet.zip"


def _find_files(directory):
    for c in _candidates(directory):
        if c.is_dir() and all((c / f).exists() for f in POS_FILES):
            return c, _read_folder(c)
        if c.suffix == ".zip" and c.is_file():
            return c, _read_zip(c)
    return None, None


def load_wordnet_synonyms(directory=None, download: bool = True) -> dict[str, set[str]]:
    """{word: synonyms} over all of WordNet 3.0; single alphabetic words only; a word is not its own synonym."""
    source, files = _find_files(directory)
    if files is None and download:
        try:
            import nltk

            nltk.download("wordnet", quiet=True, raise_on_error=True)
        except Exception:  # no nltk, or offline: fall through to the explanation below
            pass
        source, files = _find_files(directory)
    if files is None:
        raise FileNotFoundError(
            "WordNet 3.0 data files (data.noun, data.verb, data.adj, data.adv) were not found. Install them "
            "offline with the Debian/Ubuntu package `apt-get install wordnet-base` (files in /usr/share/wordnet), "
            "or online with `pip install nltk` and `python -c \"import nltk; nltk.download('wordnet')\"`, "
            "or set COURSE_WORDNET_DIR to a folder that holds the data.* files.")
    synonyms: dict[str, set[str]] = {}
    for lines in files:
        for lemmas in parse_data_file(lines):
            words = {w for w in lemmas if w.isalpha()}
            for w in words:
                synonyms.setdefault(w, set()).update(words - {w})
    return {w: s for w, s in synonyms.items() if s}


def restrict_synonyms(synonyms: dict, vocab, max_per_word: int = 8, stopwords=STOPWORDS) -> dict[str, list[str]]:
    """S(w) for each vocabulary word: its synonyms that are in ``vocab``, at most ``max_per_word``
    (the most frequent first, i.e. lowest vocabulary id), never for stop words."""
    table = {}
    for w in vocab.itos[2:]:
        if w in stopwords or w not in synonyms:
            continue
        subs = sorted((s for s in synonyms[w] if s in vocab and s not in stopwords), key=vocab.id)[:max_per_word]
        if subs:
            table[w] = subs
    return table
