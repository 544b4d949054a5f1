// Typeset the formulas that pymdownx.arithmatex (generic mode) wraps in span/div.arithmatex: $...$ and $$...$$
// in the pages and in the API docstrings. Only those elements are processed.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true, processEnvironments: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" },
};
document$.subscribe(() => {
  if (window.MathJax && MathJax.typesetPromise) {
    MathJax.typesetPromise();
  }
});
