// The indicator's chart: monthly values against the target (ECharts, vendored; data from the page itself).
(function () {
  var node = document.getElementById("chart");
  if (!node || !window.echarts) return;
  var data = JSON.parse(node.dataset.chart);
  var unit = node.dataset.unit;
  var series = [
    {name: "数值", type: "bar", data: data.values, itemStyle: {color: "#0b57d0"}},
    {name: "预测", type: "line", data: data.forecast, lineStyle: {type: "dashed"}, itemStyle: {color: "#8a5300"}},
    {name: "目标", type: "line", symbol: "none", data: data.periods.map(function () { return data.target; }),
     itemStyle: {color: "#b42318"}}
  ];
  if (data.target_max !== null) {
    series.push({name: "目标上限", type: "line", symbol: "none", data: data.periods.map(function () { return data.target_max; }),
                 itemStyle: {color: "#b42318"}, lineStyle: {type: "dotted"}});
  }
  var chart = echarts.init(node);
  chart.setOption({
    animation: false,  // the page is read (and screenshot) as it is drawn
    tooltip: {trigger: "axis"}, legend: {top: 0}, grid: {left: 48, right: 16, top: 36, bottom: 32},
    xAxis: {type: "category", data: data.periods.map(function (p) { return p.slice(5) + "月"; })},
    yAxis: {type: "value", name: unit},
    series: series
  });
  window.addEventListener("resize", function () { chart.resize(); });
})();
