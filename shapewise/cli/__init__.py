"""The ``shapewise`` command line: parsing and formatting only; the work is the public API's."""
