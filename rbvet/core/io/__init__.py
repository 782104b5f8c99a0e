"""Reading and writing: frames (FITS, HDUs, maps), catalogs, exports, atomic files."""
