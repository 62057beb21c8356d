from samvad.cli import main

main()
