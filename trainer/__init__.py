import os

# PyTorch backs CPU buffers of 2 MiB and more with transparent huge pages when this is set
# before its first allocation (c10 reads it once), which this import precedes in every
# `python -m trainer.*`. With the fixed mmap threshold (trainer.dist.fix_mmap_threshold), a
# full-graph step at 100k playlists took 0.82x the time at 0.71x the peak (bench/RESULTS.md).
# Nothing changes where the kernel has huge pages off; a user's setting wins.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
