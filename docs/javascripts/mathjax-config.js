// MathJax 2 (Debian's libjs-mathjax, copied into the site at build): render the TeX that
// arithmatex leaves in \( \) and \[ \] inside elements of class "arithmatex", as SVG.
window.MathJax = {
  tex2jax: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true,
             processClass: "arithmatex", ignoreClass: ".*" },
  SVG: { font: "TeX" },
  showMathMenu: false,
  messageStyle: "none",
};
