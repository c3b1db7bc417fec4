"""Tasks: per-member data with a leading ensemble dimension. Nothing downloads."""

from plasticlab.tasks.base import Dataset, gather
from plasticlab.tasks.classification import cifar10, digits
from plasticlab.tasks.regression import teacher_regression

__all__ = ["Dataset", "cifar10", "digits", "gather", "teacher_regression"]
