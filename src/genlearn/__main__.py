from genlearn.cli import main

main()
