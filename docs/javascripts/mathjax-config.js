// The TeX of the tutorials is left in \( \) and \[ \] (arithmatex, generic); a MathJax on the
// reader's machine renders it. No script is fetched from a CDN at build time or in the tests.
window.MathJax = { tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]] } };
