"""What predicts: loading a trained run (``predictor``) and what the commands and ``members.api``
build on it to find and classify faces."""
