import sys

from neuroplex.cli import main

sys.exit(main())
