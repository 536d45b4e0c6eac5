from trigger_operator.cli import main

raise SystemExit(main())
