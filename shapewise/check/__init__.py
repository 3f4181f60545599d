"""Shape checks: rules with stable ids, config readers, the meta-device tracer, and hooks.

``shapewise.check_shape`` / ``check_before_training`` (in :mod:`shapewise.check.api`) are
the entry points; :mod:`shapewise.check.rules` holds the rules (``RULES``); the training
callbacks are in :mod:`shapewise.check.callbacks`. Nothing here imports torch unless a live
module is checked.
"""
