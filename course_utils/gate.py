"""Alias: ``python -m course_utils.gate`` runs project p3's promotion gate, ``course_utils.fraud.gate``."""
import sys

from .fraud.gate import main

if __name__ == "__main__":
    sys.exit(main())
