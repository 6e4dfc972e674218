import sys

from testpbx.pbx import main

sys.exit(main())
