"""Jobs: what the CLI and the pipelines run (fit, score, flag), as library functions."""
