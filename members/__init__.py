"""Member trainers for the FER2013 ensemble: data, preprocessing, augmentation, architectures, training."""
