"""Shared by training and prediction: the Keras backend choice, the hardware probe, the member
registry, the preprocessing layers and the VGGFace weight loader."""
