"""Getting pictures into a collection: Steam (catalogues and banners, ``steam``) and a
user's own folders, archives and name files (``inputs``)."""
