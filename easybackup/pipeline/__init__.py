"""The pipeline library: stages wired into one checked pipeline, the codecs, the watchdog."""
