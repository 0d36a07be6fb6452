"""Static files of the sandbox console (a package so setuptools ships them as package data)."""
