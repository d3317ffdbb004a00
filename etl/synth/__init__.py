"""Synthetic Million Playlist Dataset: slices in the exact MPD format, calibrated, with structure.

    python -m etl.synth --playlists N --out DIR [--seed S] [--workers W] [--overwrite]
                        [--challenge-set K]

writes ``mpd.slice.A-B.json`` files of 1,000 playlists (pids ``0..N-1``; the last file may be
shorter) that pass every rule of :mod:`etl.checker`, byte for byte in the MPD's layout (the
layout ``json.dumps(obj, indent=4, separators=(", ", ": "))`` gives, ASCII-escaped, key order of
the real files, one trailing newline). ``description`` (on ~1.9% of playlists) is written as the
last playlist key: the MPD's key order is a Python 2 dict's, and simulating CPython 2.7's string
hash and dict probing for the 12 keys puts ``description`` last whenever ``name`` is first, as
it is in every real record.

The catalogue is implicit and unbounded, so no file needs another's: a track is
``(genre, artist rank, album index, track index)``; its URIs, names and duration are hashes of
that key and the seed, so a track keeps them in every file. Each file's content is a pure
function of ``(seed, file index, N)``; ``--workers`` only changes the speed.

Modules: ``calibration`` (the numbers), ``tracks`` (the implicit catalogue), ``playlists``
(the generator), ``slices`` and ``challenge`` (MPD JSON), ``columnar`` (playlists as
columns), ``graphdir`` (a contract graph dir straight from the generator, no Spark), ``write``
(the output, published whole), ``command``.

Generative model (constants in ``calibration``, calibrated to ``shared/data/mpd_stats.txt``; see
``bench/RESULTS.md`` for generated-vs-real numbers):

- length, followers, edits, last-modified day: the real top-20 histograms, extended by fitted
  tails (length: mean 66.35, mode 20; followers: 75.4% have 1);
- each playlist mixes 1-3 latent genres; its title comes from its main genre's pool built from
  the real top titles (country, chill, rap, workout, ...), or a generic/personal title;
- an entry starts a run with a fresh draw: genre from the mix, artist rank within the genre and
  album within the artist from offset power laws (heavy tails make the distinct tracks, albums
  and artists grow like the real Heaps curves), track within the album; following entries of a
  run stay on the same album or the same artist. These draws keep the marginals, and put
  structure (genre -> artist -> album -> track) into the playlists that item co-occurrence alone
  cannot exploit for rarely seen tracks;
- repeats of the same track inside a playlist are redrawn, then ~1.3% of entries are planted
  duplicates, as real playlists have.

``--challenge-set K`` also writes ``challenge_set.json`` in the RecSys Challenge 2018 format from
K further playlists (pids N..N+K-1, in no slice), cycling through the challenge's 10 categories
(title only; title + first 1, 5, 10, 25, 100; first 5 or 10 without title; title + random 25 or
100) among the ones a playlist is long enough for; the held-out track URIs go to
``challenge_set_holdouts.json`` (``{"playlists": [{"pid", "holdouts": [uri, ...]}]}``) so a
submission can be scored.
"""
