"""Huge pages for PyTorch's CPU buffers, asked for before torch is imported: every command of
the trainer imports this module first (``import trainer.hugepages``), because PyTorch reads
``THP_MEM_ALLOC_ENABLE`` once, at its first CPU allocation.

PyTorch then backs CPU buffers of 2 MiB and more with transparent huge pages. With the fixed
mmap threshold (``trainer.process.fix_mmap_threshold``), a full-graph step at 100k playlists took
0.82x the time at 0.71x the peak (bench/RESULTS.md). Nothing changes where the kernel has huge
pages off; a user's setting wins.
"""

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
