"""Pretrained models: find, load once per process, hand each trial a fresh copy."""
