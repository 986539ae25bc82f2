"""What trains a member: augmentation, callbacks, losses, distillation, distribution, the
frozen-feature cache, run folders and the trainer's options (the command: ``python -m members.train``)."""
