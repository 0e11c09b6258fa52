"""The report: figures (:mod:`.figures`, :mod:`.predictability`), text tables (:mod:`.text`) and the
one-page HTML report (:mod:`.html`), all rendered from the result types of :mod:`hpnet.results`."""
