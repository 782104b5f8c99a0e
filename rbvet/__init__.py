"""rbvet: vet the detections on astronomical images with a real-bogus CNN."""

__version__ = "0.1.0"
