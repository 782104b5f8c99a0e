"""Finding the objects on a frame and measuring its PSF size."""
