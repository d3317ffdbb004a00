import sys

from etl.synth.command import main

sys.exit(main())
