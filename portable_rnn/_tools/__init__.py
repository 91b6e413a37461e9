"""The tools around the library: the conformance check, the benchmarks and the settings of
the command-line processes. They use the library as a user would (its public functions),
and nothing in the library imports them.
"""
