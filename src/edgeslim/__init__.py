"""edgeslim: make CNN image classifiers small and fast for edge devices, measured on real artifacts."""

__version__ = "0.1.0"
