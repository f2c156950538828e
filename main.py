"""python main.py [DICOM_DIR | CASE]: open the guideplan workstation."""

import sys

from guideplan.ui.app import main

if __name__ == "__main__":
    sys.exit(main(sys.argv))
