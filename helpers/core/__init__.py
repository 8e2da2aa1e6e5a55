"""Ground floor: run-folder paths, atomic writes, locks, the process pool, fingerprints, class
names, the original report's numbers, results files, progress, statistics, device/precision and
plotting basics. Imports no other helpers sub-package."""
