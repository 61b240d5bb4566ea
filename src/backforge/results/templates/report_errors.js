window.bfErrors=[];
window.addEventListener('error',function(e){window.bfErrors.push(String(e.message||e));if(document.body){document.body.dataset.errors=window.bfErrors.length;}});
window.addEventListener('unhandledrejection',function(e){window.bfErrors.push(String(e.reason));if(document.body){document.body.dataset.errors=window.bfErrors.length;}});
