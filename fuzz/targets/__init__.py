"""One module per target: ``check(data)`` asserts the properties, ``main()`` runs atheris."""
