from active_learning.cli import main

raise SystemExit(main())
