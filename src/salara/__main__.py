from salara.cli import main

main()
