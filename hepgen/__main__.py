from hepgen.cli import main

raise SystemExit(main())
