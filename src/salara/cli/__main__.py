import sys

from salara.cli import main

sys.exit(main())
