"""Shared fixtures. TensorFlow logs are silenced, and XLA configured as the
entry points configure it, before TensorFlow is imported."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from iwae_tf import cli  # noqa: E402

cli.configure_xla()  # the tests compile as the entry points do

import tensorflow as tf  # noqa: E402

# Two logical CPU devices, so that tf.distribute can be tested with two
# replicas on one CPU (test_distribute.py). This must happen before
# TensorFlow initialises its devices; the default strategy still uses one.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices('CPU')[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
