"""Privacy stage: data subjects, consent records, de-identified silver tables."""
