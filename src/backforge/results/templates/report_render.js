(function(){
var numeric={num:1,int:1,money:1,pct:1,dur:1};
function fmt(v,k){
  if(v===null||v===undefined)return '\u2013';
  if(k==='money')return v.toLocaleString('en-US',{minimumFractionDigits:2,maximumFractionDigits:2});
  if(k==='pct')return (v*100).toFixed(2)+'%';
  if(k==='int')return Math.round(v).toLocaleString('en-US');
  if(k==='num')return Math.abs(v)>=1e4?v.toLocaleString('en-US',{maximumFractionDigits:2}):String(+v.toPrecision(7));
  if(k==='dur'){var d=Math.floor(v/86400),h=Math.floor(v%86400/3600),m=Math.floor(v%3600/60);
    return d?(h?d+'d '+h+'h':d+'d'):h?(m?h+'h '+m+'m':h+'h'):m?m+' min':Math.round(v)+' s';}
  if(k==='bool')return v?'yes':'';
  return String(v);
}
function button(label){var b=document.createElement('button');b.type='button';b.textContent=label;return b;}
function table(box){
  var spec=JSON.parse(document.getElementById(box.dataset.src).textContent);
  var cols=spec.columns,rows=spec.rows,view=rows.slice(),size=spec.page||50,page=0,sortCol=-1,dir=1;
  var tools=document.createElement('div');tools.className='tabletools';
  var filter=document.createElement('input');filter.type='search';filter.placeholder='Filter rows\u2026';
  var info=document.createElement('span'),prev=button('\u2039 Prev'),next=button('Next \u203a');
  tools.appendChild(filter);tools.appendChild(prev);tools.appendChild(next);tools.appendChild(info);
  var holder=document.createElement('div');holder.className='tablebox';
  var t=document.createElement('table');t.className='data';var head=t.createTHead().insertRow();var body=t.createTBody();
  var ths=cols.map(function(c,i){var th=document.createElement('th');th.textContent=c[0];if(numeric[c[1]])th.className='n';
    th.addEventListener('click',function(){sortBy(i,sortCol===i?-dir:(numeric[c[1]]?-1:1));});head.appendChild(th);return th;});
  holder.appendChild(t);if(rows.length>size)box.appendChild(tools);box.appendChild(holder);
  function order(){if(sortCol<0)return;var i=sortCol;view.sort(function(a,b){var x=a[i],y=b[i];if(x===y)return 0;
    if(x===null)return 1;if(y===null)return -1;return (x<y?-1:1)*dir;});}
  function draw(){body.textContent='';var start=page*size,end=Math.min(view.length,start+size),frag=document.createDocumentFragment();
    for(var r=start;r<end;r++){var tr=document.createElement('tr'),row=view[r];
      for(var i=0;i<cols.length;i++){var td=document.createElement('td'),v=row[i],c=cols[i];td.textContent=fmt(v,c[1]);
        var cls=numeric[c[1]]?'n':'';if(c[2]&&typeof v==='number'&&v!==0)cls+=v>0?' pos':' neg';if(cls)td.className=cls;tr.appendChild(td);}
      frag.appendChild(tr);}
    body.appendChild(frag);
    info.textContent=view.length?('rows '+(start+1).toLocaleString('en-US')+'\u2013'+end.toLocaleString('en-US')+' of '+view.length.toLocaleString('en-US')):'no rows';
    prev.disabled=page===0;next.disabled=end>=view.length;}
  function sortBy(i,d){sortCol=i;dir=d;ths.forEach(function(th,j){th.classList.remove('asc','desc');if(j===i)th.classList.add(d>0?'asc':'desc');});
    order();page=0;draw();}
  filter.addEventListener('input',function(){var q=filter.value.toLowerCase();
    view=q?rows.filter(function(r){return r.some(function(v){return v!==null&&String(v).toLowerCase().indexOf(q)>=0;});}):rows.slice();
    order();page=0;draw();});
  prev.addEventListener('click',function(){if(page>0){page--;draw();}});
  next.addEventListener('click',function(){if((page+1)*size<view.length){page++;draw();}});
  if(spec.sort)sortBy(spec.sort[0],spec.sort[1]);else draw();
}
document.querySelectorAll('.bf-table').forEach(function(box){try{table(box);}catch(e){window.bfErrors.push(String(e));}});
var specs=JSON.parse(document.getElementById('bf-charts').textContent);
var config={displaylogo:false,responsive:true,modeBarButtonsToRemove:['lasso2d','select2d','autoScale2d']};
var ids=Object.keys(specs),next=0;
function fail(e){window.bfErrors.push(String(e));document.body.dataset.errors=window.bfErrors.length;}
function step(){
  if(next===1)document.body.dataset.firstChartMs=Math.round(performance.now());
  if(next>=ids.length){document.body.dataset.rendered=ids.length;document.body.dataset.renderMs=Math.round(performance.now());
    document.body.dataset.plotlyMs=window.bfPlotlyMs;return;}
  var id=ids[next++],s=specs[id];
  try{Plotly.newPlot(id,s.data,s.layout,config).then(function(){setTimeout(step,0);},fail);}catch(e){fail(e);}
}
step();
})();
