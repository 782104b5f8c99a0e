"""From positions to network inputs: stamps, preprocessing, grid atlas."""
