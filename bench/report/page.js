// The leaderboard page's behaviour: sort by any column (click or Enter on its header), filter
// rows by setting, backbone and family, and show one task's columns. No network, no library.
"use strict";
(function () {
  const table = document.getElementById("leaderboard");
  const body = table.tBodies[0];
  const headers = Array.from(table.tHead.rows[0].cells);
  let state = { index: -1, dir: 1 };

  function key(row, index, numeric) {
    const cell = row.cells[index];
    if (!numeric) return cell.textContent.trim().toLowerCase();
    const v = cell.dataset.value;
    return v === undefined || v === "" ? null : parseFloat(v);
  }

  function sortBy(index) {
    const th = headers[index];
    const numeric = th.dataset.type === "num";
    // First click: best first for numbers (descending when higher is better), A-Z for text.
    const first = numeric && th.dataset.higher === "true" ? -1 : 1;
    const dir = state.index === index ? -state.dir : first;
    const rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      const x = key(a, index, numeric);
      const y = key(b, index, numeric);
      if (x === null || y === null) return (x === null) - (y === null); // blanks last
      return x < y ? -dir : x > y ? dir : 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    state = { index: index, dir: dir };
  }

  headers.forEach(function (th, i) {
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortBy(i); });
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(i); });
  });

  function applyFilters() {
    const selects = Array.from(document.querySelectorAll("#filters select[data-attr]"));
    let shown = 0;
    Array.from(body.rows).forEach(function (row) {
      const keep = selects.every(function (s) {
        return s.value === "" || row.dataset[s.dataset.attr] === s.value;
      });
      row.hidden = !keep;
      if (keep) shown += 1;
    });
    const task = document.getElementById("filter-task").value;
    table.querySelectorAll("[data-task]").forEach(function (c) {
      c.hidden = task !== "" && c.dataset.task !== task;
    });
    document.getElementById("shown").textContent = shown + " of " + body.rows.length + " rows";
  }

  document.querySelectorAll("#filters select").forEach(function (s) {
    s.addEventListener("change", applyFilters);
  });
  applyFilters();
})();
