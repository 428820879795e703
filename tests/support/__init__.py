"""Helpers shared by the test suite: the local base image and the Docker daemon checks."""
