"""The benchmarks: the saga and intake bench (`run`), the list bench (`list`), and their load generators."""
