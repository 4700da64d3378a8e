// A table's "select all" box ticks every box of its table (served from here: the page allows no inline script).
document.addEventListener("change", (event) => {
  const box = event.target;
  if (!box.classList || !box.classList.contains("select-all")) return;
  for (const each of box.closest("table").querySelectorAll("tbody input[type=checkbox]")) each.checked = box.checked;
});
