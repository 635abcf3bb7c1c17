try:
    from .cli import main
except KeyboardInterrupt:
    # A Ctrl-C before the command's handlers are installed (while segment.cli loads):
    # nothing is written yet; one line and the status of an interrupt, not a traceback.
    import os

    os.write(2, b"segment: error: interrupted.\n")
    os._exit(130)

main()
