"""Qt-free core of rbvet: frames, catalogs, stamps, preprocessing, model, training."""
