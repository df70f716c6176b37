package pgtest

// FindBin is findBin for the external tests.
var FindBin = findBin
