"""The command line: `micrograd-cy bench`, `micrograd-cy train`, `micrograd-cy graph`."""
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    commands = {"bench": _bench}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: micrograd-cy {bench} [options]   (micrograd-cy COMMAND --help for more)",
              file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return commands[argv[0]](argv[1:])


def _bench(argv):
    from micrograd_cy import bench
    return bench.main(argv)
