import sys

from shapewise.cli.main import main

sys.exit(main())
